"""Where `harness finetune` finds the merged model: it lives in harness.endpoints.merged, beside the
embedded model it tunes, so the launcher prepares a tuned reader without reaching into finetune/."""

from harness.endpoints.merged import (  # noqa: F401
    ADAPTER_FILES,
    PROVENANCE,
    adapter_hash,
    merged_model_dir,
    prepare_merged_model,
    read_provenance,
)
