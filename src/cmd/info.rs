//! `powertrain info`: devices, drivers, energy sensors found (and why others are missing), kernels embedded.
use crate::cli::InfoArgs;
use crate::ops::cpu::CpuBackend;
use crate::ops::Device;
use anyhow::Result;

pub fn run(a: &InfoArgs) -> Result<()> {
    let cuda = if crate::ops::cuda::cuda_available() {
        crate::ops::cuda::device_info().unwrap_or_else(|e| serde_json::json!({"error": format!("{e:#}")}))
    } else {
        serde_json::json!({"available": false, "reason": crate::ops::cuda::NO_DRIVER})
    };
    let info = serde_json::json!({
        "powertrain": env!("CARGO_PKG_VERSION"),
        "protocol": crate::PROTOCOL_VERSION,
        "host": crate::util::hostname(),
        "cpu": {"threads": rayon::current_num_threads(), "name": CpuBackend::new().device_name()},
        "cuda": cuda,
        "energy": crate::energy::probe_report(),
        "sensor_verdicts": crate::energy::resolution::SensorVerdict::load_all(),
        "kernels": crate::ops::cuda::embedded_kernels_info(),
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "powertrain {} (protocol {}) on {}",
            env!("CARGO_PKG_VERSION"),
            crate::PROTOCOL_VERSION,
            info["host"].as_str().unwrap_or("")
        );
        println!("cpu:     {}", info["cpu"]["name"].as_str().unwrap_or(""));
        println!("cuda:    {}", serde_json::to_string(&info["cuda"])?);
        println!("energy:  {}", serde_json::to_string(&info["energy"])?);
        println!("kernels: {}", serde_json::to_string(&info["kernels"])?);
        let verdicts = crate::energy::resolution::SensorVerdict::load_all();
        if verdicts.is_empty() {
            println!("sensor:  not characterised yet (run `powertrain bench sensor`; stored in $POWERTRAIN_CACHE)");
        }
        for v in verdicts {
            println!("sensor:  {} ({}, {}): {}", v.device, v.measured_at, v.method, v.verdict);
        }
    }
    Ok(())
}
