"""Finding what to resume from and checking it fits the configuration asked for."""

from __future__ import annotations

from pathlib import Path

from cavegpt.config import Config, ConfigError, config_from_dict, differences
from cavegpt.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint


def resume_point(target: str | Path, config: Config | None = None) -> tuple[Config, tuple[Path, dict]]:
    """The config to run and (checkpoint, state) to start from.

    ``target`` is a run folder (its newest usable checkpoint) or a checkpoint file. With ``config``
    (``train resume=PATH``), every setting that changes what is learned must match the checkpoint's;
    without it (``cavegpt resume``), the checkpoint's own config is used. Either way the run goes on
    in the checkpoint's folder, so its log and metrics continue.
    """
    target = Path(target)
    if target.is_dir():
        path, state = latest_checkpoint(target)
    elif target.exists():
        path, state = target, load_checkpoint(target)
    else:
        raise CheckpointError(f"{target}: no such run folder or checkpoint. Run folders live under logs/ "
                              "(e.g. cavegpt resume logs/20261124-101500-ab12cd)")
    saved = config_from_dict(state["config"], str(path))
    if config is None:
        config = saved
    else:
        changed = differences(saved, config)
        if changed:
            raise ConfigError(f"{path} was trained with other settings; resuming would not continue the same run:\n  "
                              + "\n  ".join(changed))
    config.train.log_dir, config.train.run_id = str(path.parent.parent), path.parent.name
    config.train.resume = str(target)
    return config, (path, state)

