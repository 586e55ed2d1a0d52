"""Real few-shot data for the same solvers: loaders, episodic samplers and evaluation protocols.

Data are never downloaded: every loader takes a path (an archive or a folder).
"""

from .episodes import (
    ClassSplit,
    EpisodeIndex,
    EpisodeSampler,
    Episodes,
    FixedEpisodes,
    fixed_episodes,
    split_classes,
)
from .imagesets import (
    IMAGESETS,
    ImageSet,
    ImageSetDataError,
    load_cifar_fs,
    load_fc100,
    load_imageset,
    load_miniimagenet,
)
from .omniglot import OmniglotDataError, OmniglotDataset, load_omniglot, resize_ink
from .runs import (
    SCORERS,
    OneShotRun,
    RunsResult,
    evaluate_runs,
    load_runs,
    mhd_classifier,
    mhd_matrix,
    modified_hausdorff,
    resolve_scorer,
)

__all__ = [
    "IMAGESETS",
    "ImageSet",
    "ImageSetDataError",
    "load_cifar_fs",
    "load_fc100",
    "load_imageset",
    "load_miniimagenet",
    "ClassSplit",
    "EpisodeIndex",
    "EpisodeSampler",
    "Episodes",
    "FixedEpisodes",
    "OmniglotDataError",
    "OmniglotDataset",
    "OneShotRun",
    "RunsResult",
    "SCORERS",
    "evaluate_runs",
    "fixed_episodes",
    "load_omniglot",
    "load_runs",
    "mhd_classifier",
    "mhd_matrix",
    "modified_hausdorff",
    "resize_ink",
    "resolve_scorer",
    "split_classes",
]
