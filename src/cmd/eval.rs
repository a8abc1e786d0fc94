//! `powertrain eval`: loss and accuracy of a checkpoint on a split.
use crate::cli::EvalArgs;
use crate::cmd::device::{resolve_device, with_backend};
use crate::data::open_dataset;
use crate::model::{checkpoint, Layout, Model};
use crate::train::eval::{eval_split, evaluate};
use crate::train::task_spec;
use anyhow::{bail, Context, Result};

pub fn run(a: &EvalArgs) -> Result<()> {
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if a.batch_size > crate::train::MAX_BATCH {
        bail!("--batch-size {}: at most {} rows per step", a.batch_size, crate::train::MAX_BATCH);
    }
    let ds = open_dataset(&a.data, None)?;
    // --init is read whole: a FIFO or device in its place would block; refused before the model is built.
    crate::util::check_regular_file(&a.init).with_context(|| format!("--init {}", a.init.display()))?;
    let split = eval_split(&ds, a.split.as_deref(), a.data.is_dir())?;
    let spec = task_spec(&a.model, &split, a.tasks.as_deref())?;
    let layout = Layout::new(spec.arch);
    let params = checkpoint::load(&a.init, &layout)?;
    let kind = resolve_device(&a.device)?;
    let (loss, acc, per_task) = with_backend!(kind, |be| {
        let mut model = Model::new(be, spec.arch, a.batch_size.min(split.n.max(1)), &params)?;
        evaluate(&mut model, &split, &spec.cols, a.batch_size)?
    });
    println!("{}: {} rows, loss {loss:.6}, accuracy {acc:.4}", split.path.display(), split.n);
    if spec.names.len() > 1 {
        for (n, v) in spec.names.iter().zip(per_task) {
            println!("  {n}: {v:.4}");
        }
    }
    Ok(())
}
