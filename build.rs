//! Builds the kernels three ways from one source, found by globbing `src/ops/*/*.cu` (one op family per folder)
//! and `kernels/*.cuh`:
//!
//! 1. `$OUT_DIR/params.cuh`: the C twins of the parameter structs and the shared constants, generated from the
//!    `cuda_struct!` / `cuda_const!` blocks of `src/ops/**/*.rs` (src/ops/abi.rs). `kernels/common.cuh`
//!    includes it, so NVRTC and g++ see the structs the Rust side defines, field by field.
//! 2. NVRTC (when libnvrtc can be loaded): per kernel file CUBIN for sm_90 (H100/H200) and sm_80 (A100), PTX for
//!    compute_80, and always the source, into `$OUT_DIR/kernels.rs` (included by src/ops/cuda/modules.rs). The
//!    ptxas report of the CUBIN builds goes to `$OUT_DIR/ptxas-report.txt` (shown by `powertrain info`) and,
//!    for a kernel file that spills, to `cargo:warning=` lines.
//! 3. The CPU emulation (`check --device emu`, the tests): every kernel file compiled as C++20 by g++ under
//!    src/ops/emu/emu.h, with a launch table of the `extern "C" __global__` functions found in it, into a static
//!    library linked into the crate.
//!
//! NVRTC and g++ rerun only when their inputs change (a fingerprint in `$OUT_DIR`), so editing Rust code under
//! src/ops costs a parse, not a kernel build. NVRTC comes from the `nvidia-cuda-nvrtc==13.0.88` wheel: its
//! `nvidia/cu13/lib` folder must be on `LD_LIBRARY_PATH`. Without NVRTC only the sources are embedded (the backend
//! then compiles at run time), unless `POWERTRAIN_REQUIRE_NVRTC=1`, which makes a missing or failing NVRTC a
//! build error.

#[path = "src/ops/abi.rs"]
mod abi;
#[path = "src/ops/cuda/nvrtc.rs"]
mod nvrtc;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// CUBIN architectures, then the PTX's (see the generated table).
const CUBIN_ARCHS: &[u32] = &[90, 80];
const PTX_ARCH: u32 = 80;

/// One kernel source: `src/ops/<family>/<file>`.
struct Kernel {
    path: PathBuf,
    /// Repository-relative path, e.g. `src/ops/conv2d/conv2d.cu`.
    rel: String,
    /// File name (the NVRTC program name) and stem.
    name: String,
    stem: String,
    text: String,
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernels = kernel_sources(&root);
    let headers = files(&root.join("kernels"), "cuh");
    let rust = rust_sources(&root.join("src/ops"));
    for p in kernels.iter().map(|k| &k.path).chain(&headers).chain(&rust) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    for p in ["build.rs", "kernels", "src/ops", "src/ops/emu/emu.h", "src/ops/emu/emu.cpp"] {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed=POWERTRAIN_REQUIRE_NVRTC");
    println!("cargo:rerun-if-env-changed=LD_LIBRARY_PATH");

    let abi = read_abi(&root, &rust);
    let params_h = abi.header();
    write_if_changed(&out.join("params.cuh"), &params_h);
    let mut header_texts: Vec<(String, String, PathBuf)> =
        headers.iter().map(|p| (file_name(p), read(p), p.clone())).collect();
    header_texts.push(("params.cuh".into(), params_h, out.join("params.cuh")));
    embed_kernels(&out, &kernels, &header_texts);
    build_emulator(&root, &out, &kernels, &abi, &header_texts);
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn write(p: &Path, text: impl AsRef<[u8]>) {
    std::fs::write(p, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
}

/// Write only when the content differs (an unchanged file keeps its mtime).
fn write_if_changed(p: &Path, text: &str) {
    if std::fs::read_to_string(p).ok().as_deref() != Some(text) {
        write(p, text);
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().and_then(|s| s.to_str()).unwrap_or("?").to_string()
}

/// The files of `dir` ending in `.ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.retain(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) == Some(ext));
    v.sort();
    v
}

/// Every `src/ops/<family>/*.cu`, sorted by path.
fn kernel_sources(root: &Path) -> Vec<Kernel> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("src/ops"))
        .expect("src/ops exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut out: Vec<Kernel> = Vec::new();
    for path in dirs.iter().flat_map(|d| files(d, "cu")) {
        let name = file_name(&path);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("kernel").to_string();
        if let Some(k) = out.iter().find(|k| k.name == name) {
            panic!("two kernel files are named {name} ({} and {}): give each a unique name", k.rel, path.display());
        }
        let rel = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        out.push(Kernel { text: read(&path), path, rel, name, stem });
    }
    out
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = files(dir, "rs");
    let mut subdirs: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    subdirs.retain(|p| p.is_dir());
    subdirs.sort();
    for d in subdirs {
        out.extend(rust_sources(&d));
    }
    out
}

/// The structs and constants shared with the kernels; a malformed block is a build error naming the line.
fn read_abi(root: &Path, rust: &[PathBuf]) -> abi::Abi {
    let mut a = abi::Abi::default();
    for p in rust {
        let rel = p.strip_prefix(root).unwrap_or(p).display().to_string();
        a.parse_file(&rel, &read(p)).unwrap_or_else(|e| panic!("{e}"));
    }
    a.validate().unwrap_or_else(|e| panic!("{e}"));
    a
}

/// FNV-1a over the parts (with separators): the inputs of a build step.
fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// True when `stamp` holds `fp` and every output exists: the step can be skipped.
fn up_to_date(stamp: &Path, fp: &str, outputs: &[PathBuf]) -> bool {
    std::fs::read_to_string(stamp).ok().as_deref() == Some(fp) && outputs.iter().all(|p| p.exists())
}

/// NVRTC over every kernel file and the table `$OUT_DIR/kernels.rs`.
fn embed_kernels(out: &Path, kernels: &[Kernel], headers: &[(String, String, PathBuf)]) {
    let require = std::env::var("POWERTRAIN_REQUIRE_NVRTC").map(|v| v == "1").unwrap_or(false);
    let have_nvrtc = nvrtc::nvrtc_present();
    let version = if have_nvrtc { nvrtc::nvrtc_version().ok() } else { None };
    if !have_nvrtc {
        if require {
            panic!(
                "POWERTRAIN_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded: `pip install nvidia-cuda-nvrtc==13.0.88` and \
                 put its nvidia/cu13/lib folder on LD_LIBRARY_PATH"
            );
        }
        println!(
            "cargo:warning=libnvrtc not found at build time: kernels are embedded as source only and will be compiled \
             at run time by NVRTC (pip install nvidia-cuda-nvrtc==13.0.88 and add its nvidia/cu13/lib to LD_LIBRARY_PATH \
             to embed CUBIN/PTX)"
        );
    }
    let mut parts: Vec<&str> = kernels.iter().flat_map(|k| [k.rel.as_str(), k.text.as_str()]).collect();
    parts.extend(headers.iter().flat_map(|(n, t, _)| [n.as_str(), t.as_str()]));
    let v = format!("{version:?} {CUBIN_ARCHS:?} {PTX_ARCH} {:?} {:?}", nvrtc::options("sm_90"), out.display());
    parts.push(&v);
    let fp = fingerprint(&parts);
    let (table_path, stamp) = (out.join("kernels.rs"), out.join("nvrtc.fingerprint"));
    if up_to_date(&stamp, &fp, &[table_path.clone(), out.join("ptxas-report.txt")]) {
        return;
    }
    let header_refs: Vec<(&str, &str)> = headers.iter().map(|(n, t, _)| (n.as_str(), t.as_str())).collect();
    let mut report = String::new();
    let _ = writeln!(
        report,
        "# ptxas report of the embedded CUBINs (NVRTC {})",
        version.map(|(a, b)| format!("{a}.{b}")).unwrap_or_else(|| "not available at build time".into())
    );
    let mut table = String::new();
    table.push_str("// @generated by build.rs: the kernels of src/ops/*/*.cu, compiled by NVRTC at build time.\n");
    let _ = writeln!(table, "pub static NVRTC_BUILD_VERSION: Option<(i32, i32)> = {version:?};");
    table.push_str("pub static HEADERS: &[(&str, &str)] = &[\n");
    for (n, _, p) in headers {
        let _ = writeln!(table, "    ({n:?}, include_str!({:?})),", p.display().to_string());
    }
    table.push_str("];\npub static MODULES: &[EmbeddedModule] = &[\n");
    for k in kernels {
        let (cubins, ptx) =
            if have_nvrtc { compile_nvrtc(out, k, &header_refs, require, &mut report) } else { (vec![], None) };
        table.push_str(&module_entry(k, &cubins, ptx.as_deref()));
    }
    table.push_str("];\n");
    if !have_nvrtc {
        report
            .push_str("\nNVRTC was not available at build time: nothing was compiled, so there is no ptxas report.\n");
    }
    let report_path = out.join("ptxas-report.txt");
    write(&report_path, report);
    let _ = writeln!(table, "pub static PTXAS_REPORT: &str = include_str!({:?});", report_path.display().to_string());
    write(&table_path, table);
    write(&stamp, fp);
}

/// CUBINs (per `CUBIN_ARCHS`) and the PTX of one kernel file, written to `out`; the ptxas log into `report`.
fn compile_nvrtc(
    out: &Path,
    k: &Kernel,
    headers: &[(&str, &str)],
    require: bool,
    report: &mut String,
) -> (Vec<(u32, PathBuf)>, Option<PathBuf>) {
    let mut cubins = Vec::new();
    for &arch in CUBIN_ARCHS {
        let a = format!("sm_{arch}");
        match nvrtc::compile(&k.text, &k.name, headers, &nvrtc::options(&a), nvrtc::Output::Cubin) {
            Ok(c) => {
                let f = out.join(format!("{}.{a}.cubin", k.stem));
                write(&f, &c.image);
                let _ = writeln!(report, "\n## {} {a}\n{}", k.rel, c.log.trim_end());
                let (st, ld) = nvrtc::spill_bytes(&c.log);
                if st > 0 || ld > 0 {
                    println!("cargo:warning={} {a}: registers spill ({st} bytes stored, {ld} bytes loaded):", k.rel);
                    for line in c.log.lines().filter(|l| !l.trim().is_empty()) {
                        println!("cargo:warning=  {line}");
                    }
                }
                cubins.push((arch, f));
            }
            Err(log) => {
                fail(require, &log);
                return (cubins, None);
            }
        }
    }
    let a = format!("compute_{PTX_ARCH}");
    match nvrtc::compile(&k.text, &k.name, headers, &nvrtc::options(&a), nvrtc::Output::Ptx) {
        Ok(c) => {
            let f = out.join(format!("{}.{a}.ptx", k.stem));
            write(&f, &c.image);
            (cubins, Some(f))
        }
        Err(log) => {
            fail(require, &log);
            (cubins, None)
        }
    }
}

/// The `EmbeddedModule { .. }` of one kernel file in the generated table.
fn module_entry(k: &Kernel, cubins: &[(u32, PathBuf)], ptx: Option<&Path>) -> String {
    let mut t = String::from("    EmbeddedModule {\n");
    let _ = writeln!(t, "        file: {:?},", k.name);
    let _ = writeln!(t, "        path: {:?},", k.rel);
    let _ = writeln!(t, "        source: include_str!({:?}),", k.path.display().to_string());
    t.push_str("        cubins: &[");
    for (arch, f) in cubins {
        let _ = write!(t, "({arch}, include_bytes!({:?}) as &[u8]), ", f.display().to_string());
    }
    t.push_str("],\n");
    match ptx {
        Some(f) => {
            let _ = writeln!(t, "        ptx: Some(({PTX_ARCH}, include_str!({:?}))),", f.display().to_string());
        }
        None => t.push_str("        ptx: None,\n"),
    }
    t.push_str("    },\n");
    t
}

/// A kernel that NVRTC rejects: a build error under POWERTRAIN_REQUIRE_NVRTC=1, else warnings (the module is then
/// embedded as source only, and loading it at run time reports the same error).
fn fail(require: bool, log: &str) {
    if require {
        panic!("POWERTRAIN_REQUIRE_NVRTC=1 and NVRTC failed:\n{log}");
    }
    for line in log.lines().filter(|l| !l.trim().is_empty()).take(30) {
        println!("cargo:warning={line}");
    }
}

/// The generated C++ of the emulation: one wrapper per kernel file (the file itself and its launch table
/// entries), the table of all of them, and the parameter structs' layout as g++ sees it. `(file name, text)`.
fn emulator_sources(kernels: &[Kernel], abi: &abi::Abi) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut table = String::from("// @generated by build.rs: every kernel of src/ops/*/*.cu.\n");
    let mut calls = String::new();
    for k in kernels {
        let names = abi::kernel_names(&k.rel, &k.text).unwrap_or_else(|e| panic!("{e}"));
        let mut w = format!("// @generated by build.rs: {} under the emulation, and its kernels.\n", k.rel);
        let _ = writeln!(w, "#include {:?}", k.path.display().to_string());
        let _ = writeln!(w, "std::vector<emu::Entry> emu_entries_{}() {{\n    return {{", k.stem);
        for n in &names {
            let _ = writeln!(w, "        emu::make_entry({n:?}, &{n}),");
        }
        w.push_str("    };\n}\n");
        out.push((format!("{}.cpp", k.stem), w));
        let _ = writeln!(table, "std::vector<emu::Entry> emu_entries_{}();", k.stem);
        let _ = writeln!(calls, "        for (const emu::Entry& e : emu_entries_{}()) v.push_back(e);", k.stem);
    }
    table
        .push_str("const std::vector<emu::Entry>& emu::table() {\n    static const std::vector<emu::Entry> t = [] {\n");
    table.push_str("        std::vector<emu::Entry> v;\n");
    table.push_str(&calls);
    table.push_str("        return v;\n    }();\n    return t;\n}\n");
    out.push(("tables.cpp".into(), table));
    out.push(("params.cpp".into(), param_layout_source(abi)));
    out
}

/// `emu_param_size(name)` and `emu_param_offset(name, field)` as g++ compiles params.cuh (for the test that
/// compares them with the Rust structs field by field).
fn param_layout_source(abi: &abi::Abi) -> String {
    let mut s = String::from(
        "// @generated by build.rs: the parameter structs' layout as g++ sees params.cuh.\n#include <stddef.h>\n\
         #include <string.h>\n#include \"params.cuh\"\nextern \"C\" {\nlong emu_param_size(const char* s) {\n",
    );
    for st in &abi.structs {
        let _ = writeln!(s, "    if (strcmp(s, {:?}) == 0) return (long)sizeof({});", st.name, st.name);
    }
    s.push_str("    return -1;\n}\nlong emu_param_offset(const char* s, const char* f) {\n");
    for st in &abi.structs {
        for (f, _) in &st.fields {
            let _ = writeln!(
                s,
                "    if (strcmp(s, {:?}) == 0 && strcmp(f, {f:?}) == 0) return (long)offsetof({}, {f});",
                st.name, st.name
            );
        }
    }
    s.push_str("    return -1;\n}\n}\n");
    s
}

/// g++ over the emulator and every kernel file, into `libpowertrain_emu.a` (two files at a time).
fn build_emulator(root: &Path, out: &Path, kernels: &[Kernel], abi: &abi::Abi, headers: &[(String, String, PathBuf)]) {
    let emu_dir = root.join("src/ops/emu");
    let gen_dir = out.join("emu");
    std::fs::create_dir_all(&gen_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", gen_dir.display()));
    let generated = emulator_sources(kernels, abi);
    let (emu_h, emu_cpp) = (read(&emu_dir.join("emu.h")), read(&emu_dir.join("emu.cpp")));
    let mut parts: Vec<&str> = vec![&emu_h, &emu_cpp];
    parts.extend(kernels.iter().flat_map(|k| [k.rel.as_str(), k.text.as_str()]));
    parts.extend(headers.iter().map(|(_, t, _)| t.as_str()));
    parts.extend(generated.iter().flat_map(|(n, t)| [n.as_str(), t.as_str()]));
    let fp = fingerprint(&parts);
    let (lib, stamp) = (out.join("libpowertrain_emu.a"), out.join("emu.fingerprint"));
    if up_to_date(&stamp, &fp, std::slice::from_ref(&lib)) {
        println!("cargo:rustc-link-search=native={}", out.display());
        println!("cargo:rustc-link-lib=static=powertrain_emu");
        println!("cargo:rustc-link-lib=stdc++");
        return;
    }
    let mut sources = vec![emu_dir.join("emu.cpp")];
    for (n, t) in &generated {
        let p = gen_dir.join(n);
        write_if_changed(&p, t);
        sources.push(p);
    }
    let base = || {
        let mut b = cc::Build::new();
        b.cpp(true)
            .std("c++20")
            .opt_level(2)
            .debug(false)
            .warnings(true)
            .flag("-Wno-unknown-pragmas")
            .flag("-Wno-unused-parameter")
            .flag("-include")
            .flag(emu_dir.join("emu.h").to_str().expect("utf-8 path"))
            .include(root.join("kernels"))
            .include(out);
        b
    };
    let objects = compile_parallel(&sources, &base);
    let mut archive = base();
    archive.objects(objects);
    archive.compile("powertrain_emu");
    write(&stamp, fp);
}

/// Compile each source to an object with `base()`, on as many threads as there are cores (at most 4), each
/// taking the next source when it is done.
fn compile_parallel(sources: &[PathBuf], base: &(dyn Fn() -> cc::Build + Sync)) -> Vec<PathBuf> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut objects = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(src) = sources.get(i) else { return objects };
                        objects.extend(base().file(src).compile_intermediates());
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a g++ thread panicked")).collect()
    })
}
