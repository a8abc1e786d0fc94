//! Tests across the op families: the parameter structs against their C twins field by field, the registry, the
//! launch plans against the kernels the emulator found, the emulation's guard zones, and the check harness
//! flagging a wrong kernel.
use super::check::{awkward_cases, compare_all};
use super::cpu::CpuBackend;
use super::cuda::stamps::PT_STAMP_RING;
use super::emu::{ffi, EmuBackend, EmuBuf};
use super::launch::{Arg, DeviceSpec, Launch, Launcher, TILE_THREADS};
use super::*;
use anyhow::Result;

/// Every parameter struct has the same size and the same fields at the same offsets in Rust and in the C
/// header the kernels are compiled with (g++ on build.rs's `params.cuh`): a generator that dropped, reordered or
/// retyped a field fails here.
#[test]
fn param_structs_match_the_c_header_field_by_field() {
    assert_eq!(PARAM_LAYOUTS.len(), 9);
    for l in PARAM_LAYOUTS {
        assert_eq!(ffi::param_size(l.name), Some(l.size), "{}: sizeof in C vs Rust", l.name);
        for &(field, offset) in l.fields {
            assert_eq!(ffi::param_offset(l.name, field), Some(offset), "{}.{field}: offsetof in C vs Rust", l.name);
        }
        assert_eq!(l.size, 4 * l.fields.len(), "{}: 4-byte fields, no padding", l.name);
    }
    assert_eq!(ffi::param_offset("Conv2dParams", "no_such_field"), None);
    assert_eq!(ffi::param_size("NoSuchParams"), None);
}

/// Sizes as the kernels have always had them (all fields 4 bytes, no padding), and derived output sizes.
#[test]
fn param_struct_sizes() {
    assert_eq!(std::mem::size_of::<Conv2dParams>(), 13 * 4);
    assert_eq!(std::mem::size_of::<Pool2dParams>(), 10 * 4);
    assert_eq!(std::mem::size_of::<GemmParams>(), 7 * 4);
    assert_eq!(std::mem::size_of::<BiasParams>(), 3 * 4);
    assert_eq!(std::mem::size_of::<EltwiseParams>(), 4);
    assert_eq!(std::mem::size_of::<LossParams>(), 2 * 4);
    assert_eq!(std::mem::size_of::<SgdParams>(), 4 * 4);
    assert_eq!(std::mem::size_of::<AdamParams>(), 8 * 4);
    assert_eq!(std::mem::size_of::<FillParams>(), 2 * 4);
    let c = Conv2dParams::new(2, 27, 1, 256, 64, 1, 5, 0, 2);
    assert_eq!((c.h_out, c.w_out), (1, 256));
    let p = Pool2dParams::new(2, 64, 1, 256, 1, 2);
    assert_eq!((p.h_out, p.w_out), (1, 128));
}

/// The registry lists every kernel once, family by family, and each family's calls name only its kernels.
#[test]
fn kernel_names_come_from_the_families() {
    assert_eq!(KERNEL_NAMES.len(), 19);
    for (i, k) in KERNEL_NAMES.iter().enumerate() {
        assert!(!KERNEL_NAMES[..i].contains(k), "{k} twice");
    }
    assert_eq!(&KERNEL_NAMES[..3], conv2d::KERNELS);
    for c in awkward_cases() {
        assert!(KERNEL_NAMES.contains(&c.op.kernel()), "{}", c.op.kernel());
    }
    // The constants the plans share with the kernels (params.cuh) keep their values.
    assert_eq!((conv2d::CONV_BN, conv2d::CONV_SPLIT_CAP), (128, 1 << 22));
    assert_eq!((gemm::GEMM_BM, gemm::GEMM_BN, gemm::GEMM_SPLIT_CAP), (64, 128, 1 << 22));
    assert_eq!((bias::BIAS_SPLIT_CAP, TILE_THREADS, PT_STAMP_RING), (1 << 16, 256, 16384));
}

/// Every function a plan names exists in the kernels, and every op of KERNEL_NAMES has a kernel of its name.
#[test]
fn plans_name_existing_kernels() {
    let names = ffi::kernel_names();
    for op in KERNEL_NAMES {
        assert!(names.iter().any(|n| n == op), "no kernel named {op} in src/ops/*/*.cu");
    }
    let dev = DeviceSpec::H100;
    let c = Conv2dParams::new(2, 27, 1, 256, 64, 1, 5, 0, 2);
    let pl = Pool2dParams::new(2, 64, 1, 256, 1, 2);
    let l = LossParams::new(64, 12);
    let mut plans = vec![
        conv2d::cuda::forward_plan(&c),
        conv2d::cuda::backward_data_plan(&c),
        conv2d::cuda::backward_filter_plan(&c, &dev),
        pool::cuda::maxpool2d_forward_plan(&pl),
        pool::cuda::maxpool2d_backward_plan(&pl),
        pool::cuda::avgpool2d_forward_plan(&pl),
        pool::cuda::avgpool2d_backward_plan(&pl),
        gemm::cuda::gemm_plan(&GemmParams::new(64, 128, 4096, false, true), &dev),
        bias::cuda::bias_forward_plan(&BiasParams::new(64, 128, 1)),
        bias::cuda::bias_backward_plan(&BiasParams::new(64, 128, 1), &dev),
        bias::cuda::bias_backward_plan(&BiasParams::new(64, 128, 32), &dev),
        bias::cuda::bias_backward_plan(&BiasParams::new(512, 32, 4096), &dev),
        elementwise::cuda::relu_forward_plan(&EltwiseParams::new(1000)),
        elementwise::cuda::relu_backward_plan(&EltwiseParams::new(1000)),
        loss::cuda::softmax_xent_plan(&l),
        loss::cuda::bce_logits_plan(&l),
        loss::cuda::accuracy_classes_plan(&l),
        loss::cuda::accuracy_binary_plan(&l),
        optim::cuda::sgd_step_plan(&SgdParams { len: 1000, ..Default::default() }),
        optim::cuda::adam_step_plan(&AdamParams::at_step(1000, 1e-3, 0.0, 1)),
        elementwise::cuda::fill_plan(&FillParams { len: 1000, value: 0.0 }),
    ];
    plans.extend(protocol_layer_plans(&dev));
    for plan in plans.drain(..) {
        assert!(!plan.is_empty());
        for l in plan {
            assert!(names.iter().any(|n| n == l.func), "plan names unknown kernel {}", l.func);
            let threads = l.block.0 * l.block.1 * l.block.2;
            assert!(threads > 0 && threads <= 1024 && threads % 32 == 0, "{}: block {:?}", l.func, l.block);
            assert!(
                l.grid.0 >= 1 && l.grid.1 >= 1 && l.grid.1 <= 65535 && l.grid.2 >= 1 && l.grid.2 <= 65535,
                "{}: grid",
                l.func
            );
            l.validate("plan", &dev, 1024, 0).unwrap();
        }
    }
}

/// The plans of the protocol's layers at batch 1, 16 and 512 (pamap2 [N, *, 1, 256/128/64] 1x5, celeba 64/32/16
/// 3x3): split scratch never overflows, and the big reductions fill every one of the 132 SMs of an H100, at
/// least twice for celeba.
fn protocol_layer_plans(dev: &DeviceSpec) -> Vec<Vec<Launch>> {
    let mut plans = Vec::new();
    for n in [1, 16, 512] {
        for (ci, h, w, co, kh, kw, ph, pw) in [
            (27, 1, 256, 64, 1, 5, 0, 2),
            (64, 1, 128, 64, 1, 5, 0, 2),
            (64, 1, 64, 128, 1, 5, 0, 2),
            (3, 64, 64, 32, 3, 3, 1, 1),
            (32, 32, 32, 64, 3, 3, 1, 1),
            (64, 16, 16, 128, 3, 3, 1, 1),
        ] {
            let c = Conv2dParams::new(n, ci, h, w, co, kh, kw, ph, pw);
            let bwf = conv2d::cuda::backward_filter_plan(&c, dev);
            assert!(c.w_len() * bwf[0].grid.2 as usize <= conv2d::CONV_SPLIT_CAP, "{c:?}: split scratch overflow");
            if n == 512 {
                let blocks = bwf[0].grid.0 * bwf[0].grid.1 * bwf[0].grid.2;
                assert!(blocks >= if h > 1 { 260 } else { 132 }, "{c:?}: backward-filter on {blocks} blocks");
            }
            plans.extend([conv2d::cuda::forward_plan(&c), conv2d::cuda::backward_data_plan(&c), bwf]);
        }
        for (i, o) in [(4096, 128), (8192, 256), (128, 12), (256, 40)] {
            for g in [
                GemmParams::new(n, o, i, false, true),
                GemmParams::new(o, i, n, true, false),
                GemmParams::new(n, i, o, false, false),
            ] {
                let plan = gemm::cuda::gemm_plan(&g, dev);
                assert!(
                    (g.m * g.n) as usize * plan[0].grid.2 as usize <= gemm::GEMM_SPLIT_CAP,
                    "{g:?}: split scratch overflow"
                );
                plans.push(plan);
            }
        }
    }
    plans
}

/// Plans follow the device: the split reductions aim at the SM count the device reports.
#[test]
fn plans_scale_with_the_sm_count() {
    let small = DeviceSpec { sms: 8, ..DeviceSpec::H100 };
    let c = Conv2dParams::new(512, 3, 64, 64, 32, 3, 3, 1, 1); // celeba conv1: one 32 x 32 tile, huge K
    let on = |d: &DeviceSpec| conv2d::cuda::backward_filter_plan(&c, d)[0].grid.2;
    assert_eq!(on(&DeviceSpec::H100), 2 * DeviceSpec::H100.conv_wave_blocks() as u32);
    assert_eq!(on(&small), 2 * small.conv_wave_blocks() as u32);
    // One 64 x 128 tile over K = 65536: 64 slices (the most) on an H100, 4 x 8 SMs = 32 on the small device.
    let g = GemmParams::new(64, 128, 65536, false, true);
    assert_eq!(gemm::cuda::gemm_plan(&g, &DeviceSpec::H100)[0].grid.2, 64);
    assert_eq!(gemm::cuda::gemm_plan(&g, &small)[0].grid.2, 32);
}

/// A kernel that writes past its buffer is an error of the emulation (guard zones), not a silent success.
#[test]
fn the_emulation_catches_a_write_outside_a_buffer() {
    let e = EmuBackend::new();
    let mut small = e.upload(&[0.0; 10]).unwrap();
    // A fill plan for 20 elements over a buffer of 10 (the 10 words past it are inside the 64-word guard zone).
    let p = FillParams { len: 20, value: 1.0 };
    let plan = elementwise::cuda::fill_plan(&p);
    let err = e.launch("fill", &plan, &p, &mut [Arg::output(e.view_mut(&mut small))]).unwrap_err();
    assert!(format!("{err:#}").contains("outside its buffer"), "{err:#}");
    // The damage stays visible: the next launch on that buffer fails too. A fresh buffer of the right size fills.
    assert!(e.fill(e.view_mut(&mut small), 1.0).is_err());
    let mut fresh = e.upload(&[0.0; 10]).unwrap();
    e.fill(e.view_mut(&mut fresh), 1.0).unwrap();
    assert_eq!(e.download(&fresh).unwrap(), vec![1.0; 10]);
}

/// The emulation under a wrapper whose `bias_forward` runs its plan twice (adding the bias twice): a wrong
/// kernel, as a bug would make one.
struct BiasTwice(EmuBackend);

impl Device for BiasTwice {
    type Buf = EmuBuf<f32>;
    type IBuf = EmuBuf<i32>;
    type View<'a> = <EmuBackend as Device>::View<'a>;
    type ViewMut<'a> = <EmuBackend as Device>::ViewMut<'a>;
    fn kind(&self) -> DeviceKind {
        self.0.kind()
    }
    fn device_name(&self) -> String {
        "emu with bias_forward run twice".into()
    }
    fn alloc(&self, len: usize) -> Result<Self::Buf> {
        self.0.alloc(len)
    }
    fn alloc_i32(&self, len: usize) -> Result<Self::IBuf> {
        self.0.alloc_i32(len)
    }
    fn upload(&self, host: &[f32]) -> Result<Self::Buf> {
        self.0.upload(host)
    }
    fn upload_i32(&self, host: &[i32]) -> Result<Self::IBuf> {
        self.0.upload_i32(host)
    }
    fn write(&self, dst: &mut Self::Buf, host: &[f32]) -> Result<()> {
        self.0.write(dst, host)
    }
    fn write_i32(&self, dst: &mut Self::IBuf, host: &[i32]) -> Result<()> {
        self.0.write_i32(dst, host)
    }
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        self.0.download(buf)
    }
    fn download_i32(&self, buf: &Self::IBuf) -> Result<Vec<i32>> {
        self.0.download_i32(buf)
    }
    fn len(&self, buf: &Self::Buf) -> usize {
        self.0.len(buf)
    }
    fn len_i32(&self, buf: &Self::IBuf) -> usize {
        self.0.len_i32(buf)
    }
    fn synchronize(&self) -> Result<()> {
        self.0.synchronize()
    }
    fn view<'a>(&self, buf: &'a Self::Buf) -> Self::View<'a> {
        self.0.view(buf)
    }
    fn view_mut<'a>(&self, buf: &'a mut Self::Buf) -> Self::ViewMut<'a> {
        self.0.view_mut(buf)
    }
    fn slice<'a>(&self, buf: &'a Self::Buf, off: usize, len: usize) -> Self::View<'a> {
        self.0.slice(buf, off, len)
    }
    fn slice_mut<'a>(&self, buf: &'a mut Self::Buf, off: usize, len: usize) -> Self::ViewMut<'a> {
        self.0.slice_mut(buf, off, len)
    }
}

impl Clock for BiasTwice {
    fn set_kernel_timing(&self, on: bool) {
        self.0.set_kernel_timing(on)
    }
    fn take_kernel_timings(&self) -> Result<Vec<KernelTiming>> {
        self.0.take_kernel_timings()
    }
    fn clock_s(&self) -> f64 {
        self.0.clock_s()
    }
}

impl Launcher for BiasTwice {
    fn spec(&self) -> &DeviceSpec {
        self.0.spec()
    }
    fn view_len(v: &Self::View<'_>) -> usize {
        EmuBackend::view_len(v)
    }
    fn view_mut_len(v: &Self::ViewMut<'_>) -> usize {
        EmuBackend::view_mut_len(v)
    }
    fn shorten<'s, 'l: 's>(v: Self::View<'l>) -> Self::View<'s> {
        v
    }
    fn shorten_mut<'s, 'l: 's>(v: Self::ViewMut<'l>) -> Self::ViewMut<'s> {
        v
    }
    fn launch<P: KernelParams>(
        &self,
        op: &'static str,
        plan: &[Launch],
        p: &P,
        args: &mut [Arg<'_, Self>],
    ) -> Result<()> {
        // Arg<BiasTwice> and Arg<EmuBackend> hold the same views: rebuild the list for the inner backend.
        let mut inner: Vec<Arg<'_, EmuBackend>> = args
            .iter_mut()
            .map(|a| match a {
                Arg::In(v) => Arg::In(*v),
                Arg::Out(v) => Arg::Out(v.reborrow()),
                Arg::IIn(b) => Arg::IIn(&**b),
                Arg::IOut(b) => Arg::IOut(&mut **b),
            })
            .collect();
        self.0.launch(op, plan, p, &mut inner)?;
        if op == "bias_forward" {
            self.0.launch(op, plan, p, &mut inner)?;
        }
        Ok(())
    }
}

/// The check harness flags a wrong kernel: with `bias_forward` wrong, exactly its rows FAIL and every other
/// kernel's awkward case passes (run on the emulation, the real kernels).
#[test]
fn the_check_harness_flags_a_wrong_kernel() {
    let cases = awkward_cases();
    let rows = compare_all(&BiasTwice(EmuBackend::new()), &CpuBackend::new(), &cases, 7);
    assert_eq!(rows.len(), cases.len());
    let failed: Vec<&str> = rows.iter().filter(|r| !r.pass).map(|r| r.kernel).collect();
    let bias_rows = rows.iter().filter(|r| r.kernel == "bias_forward").count();
    assert!(bias_rows >= 3, "{bias_rows} bias_forward cases");
    assert_eq!(failed, vec!["bias_forward"; bias_rows], "only bias_forward fails");
    for r in rows.iter().filter(|r| r.kernel == "bias_forward") {
        assert!(r.max_rel_err > r.tolerance && r.note.contains("y: max rel err"), "{r:?}");
    }
}
