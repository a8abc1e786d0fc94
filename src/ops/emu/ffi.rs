//! The C ABI of the emulator (emu.cpp): the `.cu` kernels compiled as C++20 by g++ under emu.h (build.rs).
//! Each block runs as `blockDim` fibers, one launch at a time.
//!
//! The interface mirrors `cuLaunchKernel`: `args[i]` points at the i-th kernel argument (the param struct,
//! then each device pointer, which here is a host pointer).
use std::ffi::{c_char, c_int, c_void, CStr, CString};

extern "C" {
    fn emu_kernel_count() -> c_int;
    fn emu_kernel_name(i: c_int) -> *const c_char;
    fn emu_set_stamps(buf: *mut c_void);
    fn emu_stamp_buf_bytes() -> usize;
    fn emu_stamp_ring() -> u32;
    fn emu_param_size(name: *const c_char) -> isize;
    fn emu_param_offset(name: *const c_char, field: *const c_char) -> isize;
    #[allow(clippy::too_many_arguments)]
    fn emu_launch(
        name: *const c_char,
        grid: *const u32,
        block: *const u32,
        shared_bytes: u32,
        args: *mut *mut c_void,
        nargs: c_int,
        param_size: usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
}

/// Names of every kernel the emulator knows (the `extern "C"` names of src/ops/*/*.cu).
pub fn kernel_names() -> Vec<String> {
    // SAFETY: emu_kernel_count/emu_kernel_name read a static table; names are NUL-terminated literals.
    unsafe {
        (0..emu_kernel_count()).map(|i| CStr::from_ptr(emu_kernel_name(i)).to_string_lossy().into_owned()).collect()
    }
}

/// Point the kernels' launch stamps (`pt_stamps`, kernels/common.cuh) at `buf`, or turn them off (null).
///
/// # Safety
/// `buf` must be null or point at a zeroed `PtStampBuf` (`stamp_layout().0` bytes, 8-byte aligned) that stays
/// alive, and untouched by Rust, until stamps are turned off again.
pub unsafe fn set_stamps(buf: *mut c_void) {
    emu_set_stamps(buf)
}

/// (sizeof(PtStampBuf) in bytes, PT_STAMP_RING) as the kernels' header defines them.
pub fn stamp_layout() -> (usize, u32) {
    // SAFETY: both return compile-time constants.
    unsafe { (emu_stamp_buf_bytes(), emu_stamp_ring()) }
}

/// Launch kernel `func` on the CPU.
///
/// # Safety
/// `args[0]` must point at a param struct of `param_size` bytes matching the kernel's first parameter, and
/// each following entry at a pointer variable whose target buffer is large enough for what the kernel touches
/// (the emulator cannot check bounds).
pub unsafe fn launch(
    func: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    shared_bytes: u32,
    args: &mut [*mut c_void],
    param_size: usize,
) -> Result<(), String> {
    let name = CString::new(func).map_err(|_| format!("kernel name {func:?} contains NUL"))?;
    let g = [grid.0, grid.1, grid.2];
    let b = [block.0, block.1, block.2];
    let mut err = vec![0 as c_char; 512];
    let rc = emu_launch(
        name.as_ptr(),
        g.as_ptr(),
        b.as_ptr(),
        shared_bytes,
        args.as_mut_ptr(),
        args.len() as c_int,
        param_size,
        err.as_mut_ptr(),
        err.len(),
    );
    if rc == 0 {
        Ok(())
    } else {
        Err(CStr::from_ptr(err.as_ptr()).to_string_lossy().into_owned())
    }
}

/// `sizeof` of parameter struct `name` as g++ compiled `params.cuh`, or None when the header has no such struct.
pub fn param_size(name: &str) -> Option<usize> {
    let n = CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string; the function only compares it with the generated names.
    let v = unsafe { emu_param_size(n.as_ptr()) };
    usize::try_from(v).ok()
}

/// `offsetof(name, field)` as g++ compiled `params.cuh`, or None when there is no such struct or field.
pub fn param_offset(name: &str, field: &str) -> Option<usize> {
    let (n, f) = (CString::new(name).ok()?, CString::new(field).ok()?);
    // SAFETY: NUL-terminated strings; the function only compares them with the generated names.
    let v = unsafe { emu_param_offset(n.as_ptr(), f.as_ptr()) };
    usize::try_from(v).ok()
}
