"""The one training loop every family runs through, and the policies it is made of.

The engine owns what is the same for all families: seeding and the data order
(:mod:`.batches`), progress on stderr, the run folder's records, plots and preview grids
(:mod:`.run_folder`), checkpoints and resume (:mod:`.checkpoints`), early stopping on a
validation split, Ctrl-C and SIGTERM (:mod:`.signals`) and the non-finite-loss guard. A
family supplies only its :class:`gentool.model.Model`.

A resumed run continues with exactly the numbers an uninterrupted run would have
produced, in the weights and in ``metrics.jsonl``: the data order of epoch ``e`` is drawn
from ``(seed, e)``, augmentation per (seed, epoch, index), and the global RNG the model
draws from, the epoch's running loss sums and the engine's counters are in the resume
state.
"""

from gentool.errors import TrainingDiverged
from gentool.training.loop import FitResult, RunOptions, Trainer, fit

__all__ = ["FitResult", "RunOptions", "Trainer", "TrainingDiverged", "fit"]
