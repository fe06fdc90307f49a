"""`trl-plus compare`: alignment methods trained side by side, from one reference model on one preference dataset
with the same budget and seeds, and scored per method.

Two modes:

- `--task NAME` (a synthetic task with an oracle): the reference is `--model`, or a tiny llama built here and
  fine-tuned on the task (SFT); the dataset is one set of on-policy ranked lists (4 samples of the reference per
  prompt, ranked by the oracle), shared by every method and seed. Paired losses see every ordered pair of each
  list, listwise losses the whole list, unpaired ones the top half as desirable and the bottom half as undesirable.
- `--dataset PATH --model PATH` (your own data, no oracle): pairs, ranked lists or prompt/completion/label rows;
  a held-out split (its `test` split, or `--n` rows set aside) gives the held-out metrics.

`--heads bt,gpm` adds reward models (rows `rm:bt`, `rm:gpm`) trained from the same reference on the same data and
budget (`RewardModelTrainer`; every ordered pair of each list, or the lists themselves for a listwise head), scored
by their head's held-out accuracy; they have no samples, so no win rate or KL.

`--online ppo,grpo,nash,ppo:bt` adds online methods (`PPOTrainer`, TRL's `GRPOTrainer`, `NashTrainer`): they train
on the dataset's prompts, sampling their own completions, for the same steps and seeds, at `--online-learning-rate`.
`ppo` / `grpo` / `nash` use the task's oracle (reward, or preference for nash); `ppo:HEAD` / `grpo:HEAD` / `nash:HEAD`
a reward model with that head, first trained on the same data and budget as the `rm:HEAD` row (trained once per seed,
shared by the rows that use it; nash reads it as a preference, P(a ≻ b), so `nash:gpm` plays a general preference
model). Each step takes `--batch-size` completions (GRPO: groups of 4 per prompt; PPO: one per prompt; Nash: two per
prompt, each against its own sample of the geometric mixture of policy and reference, Nash-MD with β = 0.05). PPO and
GRPO use each rollout for 4 passes (`num_ppo_epochs`, `num_iterations`), so they sample steps × batch size / 4
completions; Nash uses each once. `--online-max-new-tokens` caps their completions while training (default: the
evaluation's 16; 8 suits transitive and cyclic, whose answers take at most 3 tokens, but cuts 31 % of packing's base
answers and 16 % of arena's, which then score as malformed), and
`--online-kwargs '{"ppo:bt": {"kl_coef": 0.2}}'` sets any `PPOConfig` / `GRPOConfig` / `NashConfig` field of one row.

`--online iterative:dpo+sft,rft` adds the loops of `trl_plus.iterative` (task mode): `--steps` split into `--rounds`
rounds (default 4), each sampling 4 answers per prompt from the last round's policy, ranked by the task's oracle;
`iterative:LOSSES` trains any registry losses on every ordered pair (`iterative` alone: dpo+sft), `rft` fine-tunes on
the best of 4 with TRL's `SFTTrainer`. They train at `--learning-rate` and `--batch-size` like the offline rows, and
`--online-kwargs` passes further keywords (`{"iterative:dpo+sft": {"final_learning_rate": 5e-5}}`). Their curve
is taken at the round ends that fall on the curve's steps, and their step time is the loop's time over its steps,
sampling included. `iterative:dpo+sft@bt` or `rft@bt` rank with a reward model of that head instead of the oracle
(trained as the `rm:bt` row is, once per seed, not counted in the row's cost).

Offline rows, reward models and the loops train at `--learning-rate` (1e-4). In task runs on the tiny model built
here, a loss whose own defaults learn too little at this budget to tell it from the `sft` control has a budget of its
own (`config.TASK_BUDGETS`, found by measurement: simpo and orpo at 6e-4, orpo with β 2); `--learning-rate` and
`--loss-kwargs` override it, and the log says where one applies.

`--online bon:4,bon:16` adds best-of-N at inference: no training, the reference's best of N samples per prompt by the
oracle against one sample of the reference, with the analytic KL bound log N − (N−1)/N.

Training runs on the CPU. Per method, over `--seeds` training runs (seed s orders the data and draws the `--n`
held-out prompts and the samples for the win rate and KL; the held-out pairs are the same for every seed):

- `win rate`: the oracle's win rate of the method's samples against the reference's (task mode), its mean over
  seeds and a 95% interval that counts both the seeds' spread and each seed's sampling error (see `pooled`);
- `exploitability` (task mode): the best response's win rate against the policy, ½ at a Nash equilibrium; exact at
  the class level on `cyclic`, elsewhere a lower bound from 4 samples per prompt of the policy and the reference
  (`trl_plus.synthetic.exploitability`), the mean over seeds;
- `accuracy` / `margin`: held-out pairs ordered by the implicit reward log π − log π_ref, the same for every method
  (DPO's reward up to β), or by a reward model's P(chosen ≻ rejected); in task mode the pairs are two samples of
  the reference per prompt, oriented by the oracle's preference (pairs the oracle ties are left out);
- `KL`: KL(π‖π_ref) estimated on the policy's own samples (`trl_plus.evaluation.kl_estimate`);
- `step time`: the median training-loop iteration, in seconds (the first step of each run left out);
- `peak mem`: peak RSS while building the trainer (policy, reference, tokenised data) and training it, minus the
  RSS before, with the in-training evaluations left out; the median over seeds (see `trl_plus.cost`).

Every method runs in this process, one after another, with torch's thread count fixed (`--threads`): with the same
seeds and thread count the table repeats exactly; another thread count can change float sums and so the samples.

The package, each module importing only modules listed before it: `methods` (the rows, from --losses, --heads and
--online); `config` (the settings, and every check before training); `data` (the shared dataset, and each method's
view of it); `results` (runs, and their summary over seeds); `scoring` (held-out scores of a trained model);
`reporting` (the table, CSVs and plots; of the others it imports `config` and `results` only); `running` (training,
and `compare` itself).
"""

from __future__ import annotations

from trl_plus.compare.config import DEFAULT_LOSSES, METRICS, CompareConfig, CompareError, check_config
from trl_plus.compare.data import pairs_of, unpaired_from_ranked
from trl_plus.compare.methods import Method, parse_heads, parse_methods, parse_online
from trl_plus.compare.reporting import (
    PLOT_HINT,
    Comparison,
    markdown_table,
    plot,
    summary_line,
    table_cells,
    table_headers,
    write_plots,
    write_tables,
)
from trl_plus.compare.results import CSV_COLUMNS, MethodResult, Run, pooled, summary
from trl_plus.compare.running import compare

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_LOSSES",
    "METRICS",
    "PLOT_HINT",
    "CompareConfig",
    "CompareError",
    "Comparison",
    "Method",
    "MethodResult",
    "Run",
    "check_config",
    "compare",
    "markdown_table",
    "pairs_of",
    "parse_heads",
    "parse_methods",
    "parse_online",
    "plot",
    "pooled",
    "summary",
    "summary_line",
    "table_cells",
    "table_headers",
    "unpaired_from_ranked",
    "write_plots",
    "write_tables",
]
