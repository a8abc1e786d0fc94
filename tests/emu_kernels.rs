//! `check`'s own case list and comparison on the CUDA kernels under the CPU emulation (`ops::emu::EmuBackend`:
//! the `.cu` sources compiled by g++, launched with the CUDA plans for an H100, buffers framed by NaN guard
//! zones, outputs NaN-poisoned), against the CPU backend: what `powertrain check --device emu` runs.
//!
//! The whole list (378 cases) takes minutes on the emulation (one fiber per CUDA thread; `check --device emu`
//! runs it), so this test runs a stated subset of the same list: every case at batch 1 and 7 (both models: every
//! layer, the loss, the optimisers over all parameters) and every awkward case, i.e. all but the batch-64 model
//! cases, whose shapes differ from the batch-7 ones only in the batch dimension. The kernels' own corner cases
//! (tile variants, split-K counts, ties) are the emulation tests in each op folder's `tests.rs`.
//!
//! Seeds come from the clock (printed; rerun with POWERTRAIN_EMU_SEED=<seed>).
use powertrain::ops::check::{compare_all, Case};
use powertrain::ops::cpu::CpuBackend;
use powertrain::ops::emu::EmuBackend;

/// The cases of `check` this test runs (see the module doc).
fn emu_subset(all: &[Case]) -> Vec<Case> {
    all.iter().filter(|c| c.batch != 64).cloned().collect()
}

#[test]
fn the_check_list_passes_on_the_emulated_kernels() {
    let seed = std::env::var("POWERTRAIN_EMU_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    println!("seed = {seed} (rerun with POWERTRAIN_EMU_SEED={seed})");
    let all = powertrain::model::check_cases();
    let cases = emu_subset(&all);
    assert_eq!((all.len(), cases.len()), (378, 378 - 94), "the subset: all but the batch-64 model cases");
    let t0 = std::time::Instant::now();
    let rows = compare_all(&EmuBackend::new(), &CpuBackend::new(), &cases, seed);
    println!("{} cases on the emulation in {:.1} s", rows.len(), t0.elapsed().as_secs_f64());
    let failed: Vec<_> = rows.iter().filter(|r| !r.pass).collect();
    assert!(failed.is_empty(), "seed {seed}: {failed:#?}");
    for r in &rows {
        assert!(r.max_rel_err.is_finite() && r.max_rel_err <= r.tolerance, "{r:?}");
    }
    // Every kernel is covered by the subset.
    for k in powertrain::ops::KERNEL_NAMES {
        assert!(rows.iter().any(|r| r.kernel == *k), "{k} not in the subset");
    }
}
