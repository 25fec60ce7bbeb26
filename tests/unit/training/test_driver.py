"""The driver side of a run: the run folder it prepares (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.errors import SpecError, StorageError
from raylift.models.lora import DEFAULT_TARGETS
from raylift.specs import spec_from_dict
from raylift.specs.resolve import resolve
from raylift.testing.specs import LORA as BASE_LORA
from raylift.testing.specs import lora_job

LORA = {**BASE_LORA, "targets": list(DEFAULT_TARGETS)}


def test_resume_with_another_finetune_section_is_refused(tmp_path: Path) -> None:
    from raylift.artifacts.runs import RunRecord
    from raylift.training.driver import prepare_run_dir

    job = resolve(spec_from_dict({**lora_job(), "storage": {"path": str(tmp_path)}}))
    RunRecord(name=job.name, status="stopped", started="t", spec=job.as_json()).save(job.run_dir)
    assert prepare_run_dir(job, resume=True, overwrite=False) is not None
    changed = resolve(spec_from_dict({**job.as_json(), "finetune": {"lora": {**LORA, "rank": 2}}}))
    with pytest.raises(SpecError) as info:
        prepare_run_dir(changed, resume=True, overwrite=False)
    assert info.value.key == "finetune"
    fsdp = job.model_copy(update={"scaling": job.scaling.model_copy(update={"strategy": "fsdp"})})
    with pytest.raises(SpecError, match="wrote ddp checkpoints") as info:
        prepare_run_dir(fsdp, resume=True, overwrite=False)
    assert info.value.key == "scaling.strategy"


def test_an_existing_run_needs_resume_or_overwrite(tmp_path: Path) -> None:
    from raylift.artifacts.runs import RunRecord
    from raylift.training.driver import prepare_run_dir

    job = resolve(spec_from_dict({**lora_job(), "storage": {"path": str(tmp_path)}}))
    with pytest.raises(StorageError, match="nothing to resume"):
        prepare_run_dir(job, resume=True, overwrite=False)
    RunRecord(name=job.name, status="failed", started="t", spec=job.as_json()).save(job.run_dir)
    with pytest.raises(StorageError, match="--resume to continue it, --overwrite"):
        prepare_run_dir(job, resume=False, overwrite=False)
    assert prepare_run_dir(job, resume=False, overwrite=True) is None
    assert not Path(job.run_dir).exists()
