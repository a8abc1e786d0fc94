//! The plain-language explanations printed beside each plot (markdown), written for a student who knows
//! what a kernel is but not what a power sensor does.

pub const HEATMAP: &str = "Each cell is one training configuration (batch size x learning rate), averaged over seeds: \
how much energy it took to first reach the target accuracy. Darker is cheaper, brighter is costlier; the colour \
scale on the right gives the numbers, and *max/min* says how far apart the best and worst cells really are (a scale \
never spans less than 25 %, so near-equal cells look near-equal). Grey cells (*n/r*) never reached the target.";

pub const PER_EPOCH: &str = "The cost of one epoch (evaluation excluded) against the batch size, one line per \
learning rate. Larger batches launch fewer, bigger kernels per epoch, so an epoch usually gets cheaper until the \
device is saturated. The x axis is logarithmic and marks every batch size that was run.";

pub const ACC: &str = "How accuracy grows as energy is spent, one line per run: a line that climbs early is a run \
that turns joules into accuracy efficiently. Each point is one epoch's evaluation.";

pub const POWER: &str = "The average power of each training step (its energy over its time window) for the longest \
run. A power sensor does not see single steps: it updates its reading every few milliseconds, so powertrain \
divides each update's energy among the step windows inside it (see *Where the joules go*). Dashed lines mark the \
end of each epoch.";

pub const KERNELS: &str = "The energy attributed to each kernel over the whole run, largest first, with its \
uncertainty as a whisker where the run recorded one. The table below gives the numbers; `(between kernels)` is \
the time the device spent waiting on the host between launches.";

pub const BREAK_EVEN: &str = "Pretraining costs energy once; every later use (fine-tuning, or training only a head \
on a frozen encoder) is then cheaper than training from scratch. Where a reuse line crosses the scratch line, the \
pretraining has paid for itself.";

pub const MULTITASK: &str = "One network that predicts every attribute at once, against one network per attribute \
(and their total). *not reached* marks a network that never reached the target.";

pub const ROOFLINE: &str = "The energy roofline. Each point is a kernel: how many floating-point operations it \
does per byte it moves (arithmetic intensity, x) against the joules it spends per operation (y). A kernel that \
moves much data per operation (left) pays for memory traffic; one that reuses its data (right) approaches the \
device's floor of joules per operation. The line is the device model E = J/FLOP x FLOPs + J/byte x bytes, drawn \
from the device's calibration where the run has one.";

pub const TIMELINE: &str = "Why a 1 ms step cannot be measured directly, and how powertrain still attributes it. \
The sensor's energy counter only changes when the driver updates it (every few to a hundred milliseconds), so \
one counter update spans several steps. powertrain splits each update's energy across the step windows inside it, \
in proportion to their time weighted by the power timeline, and carries what falls after the last full window \
(the *residual*) into the next update. Inside a step, the step's energy is split among its kernels the same way \
(by their GPU time). So each step's and kernel's number is an attribution with an uncertainty, not a reading.";

pub const STATIC: &str = "*Static* (idle) energy is what the device draws just for being on: its idle power, \
measured before the run, times the time. *Dynamic* energy is the rest, what the computation itself adds. A kernel \
that runs long but does little pays mostly static energy; making it faster saves that share.";

pub const BENCH_ROOFLINE: &str = "Each dot is one kernel at one layer shape and batch size: how many floating-point \
operations it did per second (up) against how many it does per byte it reads or writes (right, its *arithmetic \
intensity*). The line is the *roofline* of this device, measured here: a kernel left of the bend (the ridge point) \
cannot go faster than the memory feeds it (bandwidth x intensity), a kernel right of it is limited by the peak \
arithmetic rate. The gap between a dot and the line is how much speed the kernel leaves on the table.";

pub const JPERGFLOP: &str = "Joules each kernel spent per billion floating-point operations it did (only kernels \
that do arithmetic: convolutions and matrix products). Lower means more work per joule; a kernel that waits on \
memory shows a high figure even if it is fast.";
