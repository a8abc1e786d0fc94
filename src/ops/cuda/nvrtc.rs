//! One NVRTC compile of a kernel source (`src/ops/<family>/*.cu`), used twice: by `build.rs` (which includes
//! this file with `#[path]`, so it may only use `std` and `cudarc::nvrtc`) to embed CUBIN/PTX, and by the CUDA
//! backend at run time when no embedded image fits the device.
//!
//! cudarc's safe `compile_ptx` cannot pass headers and has no CUBIN output, so this goes through the raw
//! `nvrtc::sys` API. Every NVRTC call's status is checked; errors are `String`s carrying the NVRTC log.

#![allow(dead_code)]

use cudarc::nvrtc::sys;
use std::ffi::{c_char, CString};

/// What to take out of a compiled program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `nvrtcGetPTX` (compile with a virtual arch, `compute_XY`).
    Ptx,
    /// `nvrtcGetCUBIN` (compile with a real arch, `sm_XY`).
    Cubin,
}

/// A successful compile: the image (PTX text without its trailing NUL, or CUBIN bytes) and the log (warnings,
/// the ptxas report with `--ptxas-options=-v`).
pub struct Compiled {
    pub image: Vec<u8>,
    pub log: String,
}

/// True when `libnvrtc` can be loaded (cudarc panics on the first NVRTC call otherwise).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library names cudarc knows; no NVRTC function is called.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's version, `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    if !nvrtc_present() {
        return Err("libnvrtc not found".into());
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers to c_int.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    check(r, "nvrtcVersion")?;
    Ok((major, minor))
}

/// The options of every compile for `arch` ("sm_90" gives a CUBIN build with the ptxas report, "compute_80" a
/// PTX build).
pub fn options(arch: &str) -> Vec<String> {
    let mut o =
        vec![format!("--gpu-architecture={arch}"), "--std=c++17".to_string(), "--generate-line-info".to_string()];
    if arch.starts_with("sm_") {
        o.push("--ptxas-options=-v".to_string());
    }
    o
}

fn check(r: sys::nvrtcResult, what: &str) -> Result<(), String> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok(())
    } else {
        Err(format!("{what} failed: {r:?}"))
    }
}

/// Compile `src` (named `name` in messages) with `headers` (`(include name, text)`, e.g. `("common.cuh", ..)`)
/// and `opts`, returning the requested image and the log. Fails with the log when NVRTC reports an error.
pub fn compile(
    src: &str,
    name: &str,
    headers: &[(&str, &str)],
    opts: &[String],
    out: Output,
) -> Result<Compiled, String> {
    if !nvrtc_present() {
        return Err(
            "libnvrtc not found (install the nvidia-cuda-nvrtc wheel and put its lib dir on LD_LIBRARY_PATH)".into()
        );
    }
    let cstr = |s: &str, what: &str| CString::new(s).map_err(|_| format!("{name}: {what} contains a NUL byte"));
    let c_src = cstr(src, "source")?;
    let c_name = cstr(name, "name")?;
    let c_hdr_src = headers.iter().map(|(_, t)| cstr(t, "header")).collect::<Result<Vec<_>, _>>()?;
    let c_hdr_name = headers.iter().map(|(n, _)| cstr(n, "header name")).collect::<Result<Vec<_>, _>>()?;
    let hdr_src: Vec<*const c_char> = c_hdr_src.iter().map(|s| s.as_ptr()).collect();
    let hdr_name: Vec<*const c_char> = c_hdr_name.iter().map(|s| s.as_ptr()).collect();
    let c_opts = opts.iter().map(|o| cstr(o, "option")).collect::<Result<Vec<_>, _>>()?;
    let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|s| s.as_ptr()).collect();

    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: all strings are NUL-terminated CStrings that outlive the program (dropped at the end of this
    // function, after nvrtcDestroyProgram); the header arrays have `headers.len()` entries each.
    let r = unsafe {
        sys::nvrtcCreateProgram(
            &mut prog,
            c_src.as_ptr(),
            c_name.as_ptr(),
            headers.len() as i32,
            if headers.is_empty() { std::ptr::null() } else { hdr_src.as_ptr() },
            if headers.is_empty() { std::ptr::null() } else { hdr_name.as_ptr() },
        )
    };
    check(r, "nvrtcCreateProgram")?;

    let result = (|| {
        // SAFETY: `prog` was created above and is destroyed only after this closure; options are valid C strings.
        let rc = unsafe { sys::nvrtcCompileProgram(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr()) };
        let log = program_log(prog);
        if rc != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(format!("NVRTC could not compile {name} ({rc:?}) with {opts:?}:\n{log}"));
        }
        let mut size = 0usize;
        let mut image;
        // SAFETY: valid program; the buffer has exactly the size NVRTC reported.
        unsafe {
            match out {
                Output::Ptx => {
                    check(sys::nvrtcGetPTXSize(prog, &mut size), "nvrtcGetPTXSize")?;
                    image = vec![0u8; size];
                    check(sys::nvrtcGetPTX(prog, image.as_mut_ptr() as *mut c_char), "nvrtcGetPTX")?;
                }
                Output::Cubin => {
                    check(sys::nvrtcGetCUBINSize(prog, &mut size), "nvrtcGetCUBINSize")?;
                    image = vec![0u8; size];
                    check(sys::nvrtcGetCUBIN(prog, image.as_mut_ptr() as *mut c_char), "nvrtcGetCUBIN")?;
                }
            }
        }
        if out == Output::Ptx {
            while image.last() == Some(&0) {
                image.pop();
            }
        }
        if image.is_empty() {
            return Err(format!("NVRTC returned an empty {out:?} image for {name} with {opts:?}"));
        }
        Ok(Compiled { image, log })
    })();
    // SAFETY: `prog` is a live program created above; it is not used afterwards.
    let rd = unsafe { sys::nvrtcDestroyProgram(&mut prog) };
    let compiled = result?;
    check(rd, "nvrtcDestroyProgram")?;
    Ok(compiled)
}

/// The program log as text (empty when NVRTC cannot give one).
fn program_log(prog: sys::nvrtcProgram) -> String {
    let mut size = 0usize;
    // SAFETY: valid program; the buffer has exactly the size NVRTC reported.
    unsafe {
        if sys::nvrtcGetProgramLogSize(prog, &mut size) != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
            return String::new();
        }
        let mut buf = vec![0u8; size];
        if sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr() as *mut c_char) != sys::nvrtcResult::NVRTC_SUCCESS {
            return String::new();
        }
        while buf.last() == Some(&0) {
            buf.pop();
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// `(stores, loads)` spill bytes summed over the ptxas report in `log` (lines like
/// `0 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads`).
pub fn spill_bytes(log: &str) -> (u64, u64) {
    let mut total = (0u64, 0u64);
    for line in log.lines() {
        let words: Vec<&str> = line.split(|c: char| c == ',' || c.is_whitespace()).filter(|w| !w.is_empty()).collect();
        for i in 0..words.len() {
            if words[i] == "spill" && i >= 2 && i + 1 < words.len() {
                let n: u64 = words[i - 2].parse().unwrap_or(0);
                match words[i + 1] {
                    "stores" => total.0 += n,
                    "loads" => total.1 += n,
                    _ => {}
                }
            }
        }
    }
    total
}
