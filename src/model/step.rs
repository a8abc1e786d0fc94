//! The passes of a training step, built from the layer table: forward, the fused loss + gradient, backward,
//! the fused optimiser launch, and the accuracy counters of an evaluation batch.
use super::{Model, Optimizer};
use crate::ops::*;
use anyhow::Result;

/// The input of conv layer `i` (`len` values): the batch for the first layer, the previous layer's pooled
/// output after it.
fn conv_input<'a, B: Backend>(be: &B, x: &'a B::Buf, pooled: &'a [B::Buf], i: usize, len: usize) -> B::View<'a> {
    be.slice(if i == 0 { x } else { &pooled[i - 1] }, 0, len)
}

impl<B: Backend> Model<'_, B> {
    /// Forward pass of the loaded batch of `n` rows up to the logits.
    pub fn forward(&mut self, n: usize) -> Result<()> {
        let be = self.be;
        let lay = &self.layout;
        for (i, l) in lay.conv_layers(n).iter().enumerate() {
            let w = lay.get(&format!("conv{}.weight", i + 1));
            let b = lay.get(&format!("conv{}.bias", i + 1));
            let ylen = l.conv.y_len();
            be.conv2d_forward(
                &l.conv,
                conv_input(be, &self.x, &self.pooled, i, l.conv.x_len()),
                be.slice(&self.params, w.offset, w.len()),
                be.slice_mut(&mut self.act[i], 0, ylen),
            )?;
            let bp = BiasParams::new(n, l.conv.c_out as usize, (l.conv.h_out * l.conv.w_out) as usize);
            be.bias_forward(&bp, be.slice(&self.params, b.offset, b.len()), be.slice_mut(&mut self.act[i], 0, ylen))?;
            be.relu_forward(&EltwiseParams::new(ylen), be.slice_mut(&mut self.act[i], 0, ylen))?;
            be.maxpool2d_forward(
                &l.pool,
                be.slice(&self.act[i], 0, ylen),
                be.slice_mut(&mut self.pooled[i], 0, l.pool.y_len()),
                &mut self.idx[i],
            )?;
        }
        let fcs = lay.fc_layers();
        for (i, f) in fcs.iter().enumerate() {
            let (w, b) = (lay.get(&format!("fc{}.weight", i + 1)), lay.get(&format!("fc{}.bias", i + 1)));
            let (before, rest) = self.fc_out.split_at_mut(i);
            let out = &mut rest[0];
            let input = if i == 0 { self.pooled.last().expect("conv layers") } else { &before[i - 1] };
            // out [n, out] = input [n, fan_in] x W^T ([out, fan_in] stored), + b.
            be.gemm(
                &GemmParams::new(n, f.out, f.fan_in, false, true),
                be.slice(input, 0, n * f.fan_in),
                be.slice(&self.params, w.offset, w.len()),
                be.slice_mut(out, 0, n * f.out),
            )?;
            be.bias_forward(
                &BiasParams::new(n, f.out, 1),
                be.slice(&self.params, b.offset, b.len()),
                be.slice_mut(out, 0, n * f.out),
            )?;
            if i + 1 < fcs.len() {
                be.relu_forward(&EltwiseParams::new(n * f.out), be.slice_mut(out, 0, n * f.out))?;
            }
        }
        Ok(())
    }

    /// Fused loss + gradient of the logits (mean over the batch); the loss stays on the device.
    pub(super) fn loss_and_grad(&mut self, n: usize) -> Result<()> {
        let be = self.be;
        let k = self.layout.arch.outputs();
        let lp = LossParams::new(n, k);
        let (logits, dlogits) = (self.fc_out.last().expect("fc layers"), self.dfc_out.last_mut().expect("fc layers"));
        if self.layout.arch.is_classification() {
            be.softmax_xent(
                &lp,
                be.slice(logits, 0, n * k),
                &self.labels,
                be.slice_mut(dlogits, 0, n * k),
                be.view_mut(&mut self.loss),
            )
        } else {
            be.bce_logits(
                &lp,
                be.slice(logits, 0, n * k),
                be.slice(&self.targets, 0, n * k),
                be.slice_mut(dlogits, 0, n * k),
                be.view_mut(&mut self.loss),
            )
        }
    }

    /// Backward pass from the logits' gradient; writes every gradient (the encoder's only when not frozen).
    pub(super) fn backward(&mut self, n: usize) -> Result<()> {
        if !self.backward_fc(n)? {
            return Ok(());
        }
        let be = self.be;
        let lay = &self.layout;
        let layers = lay.conv_layers(n);
        for i in (0..layers.len()).rev() {
            let l = &layers[i];
            let w = lay.get(&format!("conv{}.weight", i + 1));
            let b = lay.get(&format!("conv{}.bias", i + 1));
            let ylen = l.conv.y_len();
            be.maxpool2d_backward(
                &l.pool,
                be.slice(&self.dpooled[i], 0, l.pool.y_len()),
                &self.idx[i],
                be.slice_mut(&mut self.dact[i], 0, ylen),
            )?;
            be.relu_backward(
                &EltwiseParams::new(ylen),
                be.slice(&self.act[i], 0, ylen),
                be.slice_mut(&mut self.dact[i], 0, ylen),
            )?;
            let bp = BiasParams::new(n, l.conv.c_out as usize, (l.conv.h_out * l.conv.w_out) as usize);
            be.bias_backward(&bp, be.slice(&self.dact[i], 0, ylen), be.slice_mut(&mut self.grads, b.offset, b.len()))?;
            be.conv2d_backward_filter(
                &l.conv,
                conv_input(be, &self.x, &self.pooled, i, l.conv.x_len()),
                be.slice(&self.dact[i], 0, ylen),
                be.slice_mut(&mut self.grads, w.offset, w.len()),
            )?;
            if i > 0 {
                // The input's gradient is needed only below conv2 (conv1's input is the data).
                be.conv2d_backward_data(
                    &l.conv,
                    be.slice(&self.dact[i], 0, ylen),
                    be.slice(&self.params, w.offset, w.len()),
                    be.slice_mut(&mut self.dpooled[i - 1], 0, l.conv.x_len()),
                )?;
            }
        }
        Ok(())
    }

    /// Backward through the fc layers, last first: dW = dy^T x, db = sum over rows of dy, and the input's
    /// gradient dx = dy W (through the ReLU below it). Returns false when the encoder is frozen (then the
    /// gradient of the last conv block's output is not computed).
    fn backward_fc(&mut self, n: usize) -> Result<bool> {
        let be = self.be;
        let lay = &self.layout;
        let fcs = lay.fc_layers();
        for i in (0..fcs.len()).rev() {
            let f = fcs[i];
            let (w, b) = (lay.get(&format!("fc{}.weight", i + 1)), lay.get(&format!("fc{}.bias", i + 1)));
            let (dbefore, drest) = self.dfc_out.split_at_mut(i);
            let dy = be.slice(&drest[0], 0, n * f.out);
            let input = if i == 0 { self.pooled.last().expect("conv layers") } else { &self.fc_out[i - 1] };
            be.gemm(
                &GemmParams::new(f.out, f.fan_in, n, true, false),
                be.slice(&drest[0], 0, n * f.out),
                be.slice(input, 0, n * f.fan_in),
                be.slice_mut(&mut self.grads, w.offset, w.len()),
            )?;
            be.bias_backward(&BiasParams::new(n, f.out, 1), dy, be.slice_mut(&mut self.grads, b.offset, b.len()))?;
            if i == 0 && self.freeze_encoder {
                return Ok(false);
            }
            let dx = if i == 0 { self.dpooled.last_mut().expect("conv layers") } else { &mut dbefore[i - 1] };
            be.gemm(
                &GemmParams::new(n, f.fan_in, f.out, false, false),
                be.slice(&drest[0], 0, n * f.out),
                be.slice(&self.params, w.offset, w.len()),
                be.slice_mut(dx, 0, n * f.fan_in),
            )?;
            if i > 0 {
                be.relu_backward(
                    &EltwiseParams::new(n * f.fan_in),
                    be.slice(&self.fc_out[i - 1], 0, n * f.fan_in),
                    be.slice_mut(dx, 0, n * f.fan_in),
                )?;
            }
        }
        Ok(true)
    }

    /// One fused optimizer launch over the trained parameters (all, or the head only when frozen).
    pub(super) fn optimizer_step(&mut self, opt: &Optimizer) -> Result<()> {
        let be = self.be;
        let off = if self.freeze_encoder { self.layout.head_offset } else { 0 };
        let len = self.layout.total - off;
        self.opt_steps += 1;
        match *opt {
            Optimizer::Sgd { lr, momentum, weight_decay } => {
                let p = SgdParams { len: len as i32, lr, momentum, weight_decay };
                be.sgd_step(
                    &p,
                    be.slice_mut(&mut self.params, off, len),
                    be.slice(&self.grads, off, len),
                    be.slice_mut(&mut self.opt_m, off, len),
                )
            }
            Optimizer::Adam { lr, weight_decay } => {
                let p = AdamParams::at_step(len, lr, weight_decay, self.opt_steps);
                let (m, v) = (&mut self.opt_m, &mut self.opt_v);
                be.adam_step(
                    &p,
                    be.slice_mut(&mut self.params, off, len),
                    be.slice(&self.grads, off, len),
                    be.slice_mut(m, off, len),
                    be.slice_mut(v, off, len),
                )
            }
        }
    }

    /// Accumulate the accuracy counters of the evaluated batch of `n` rows.
    pub(super) fn accuracy(&mut self, n: usize) -> Result<()> {
        let be = self.be;
        let k = self.layout.arch.outputs();
        let lp = LossParams::new(n, k);
        let logits = be.slice(self.fc_out.last().expect("fc layers"), 0, n * k);
        if self.layout.arch.is_classification() {
            be.accuracy_classes(&lp, logits, &self.labels, be.view_mut(&mut self.correct))
        } else {
            be.accuracy_binary(&lp, logits, be.slice(&self.targets, 0, n * k), be.view_mut(&mut self.correct))
        }
    }
}
