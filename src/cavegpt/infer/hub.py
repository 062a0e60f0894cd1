"""``cavegpt export ... --push-to-hub USER/NAME``: an exported folder and its model card on the Hugging Face hub.

The card (README.md) is made from the run the model comes from: its report.md (the leaderboard
row, the details and the loss plot), its config, its samples and its HellaSwag score when
``cavegpt eval --hellaswag`` has left one. Uploads go through ``huggingface_hub`` with ``HF_TOKEN``
(or the token of ``hf auth login``) and honour ``HF_ENDPOINT``; failures come back as one sentence.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import huggingface_hub
from huggingface_hub import HfApi, constants
from huggingface_hub import errors as hub_errors

from cavegpt.infer.hellaswag import RESULT_FILE as HELLASWAG_FILE
from cavegpt.infer.hellaswag import describe as describe_hellaswag


class HubError(RuntimeError):
    """The model could not be published; the message says why in one sentence."""


def _section(title: str, body: str) -> list[str]:
    return [f"## {title}", "", body.strip(), ""]


def model_card(repo_id: str, folder: Path, run_dir: Path | None) -> str:
    """README.md for the hub: YAML metadata, how to load it, then what the run left."""
    hf_format = (folder / "modeling_cavegpt.py").exists()
    library = "transformers" if hf_format else "cavegpt"
    lines = ["---", f"library_name: {library}", "license: mit", "pipeline_tag: text-generation",
             "tags: [cavegpt, gpt2, nanogpt-speedrun]", "---", "", f"# {repo_id.split('/')[-1]}", "",
             "A GPT-2 (124M-class) language model trained from scratch with "
             "[cavegpt](https://github.com/cavegpt/cavegpt), the NanoGPT speedrun on one GPU.", ""]
    if hf_format:
        usage = ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                 f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", trust_remote_code=True)\n'
                 f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)\n'
                 'ids = tokenizer("<|endoftext|>The capital of France is", return_tensors="pt").input_ids\n'
                 "print(tokenizer.decode(model.generate(ids, max_new_tokens=20, do_sample=False)[0]))\n```\n\n"
                 "Documents start with `<|endoftext|>`, as in training.")
    else:
        usage = (f"```bash\nhf download {repo_id} --local-dir model\n"
                 "python -m cavegpt.infer.standalone model --prompt 'The capital of France is'\n```")
    lines += _section("Use it", usage)
    sources = [run_dir, folder] if run_dir is not None else [folder]
    for source in sources:
        if (source / HELLASWAG_FILE).exists():
            lines += _section("HellaSwag", describe_hellaswag(json.loads((source / HELLASWAG_FILE).read_text())))
            break
    if run_dir is not None and (run_dir / "report.md").exists():
        report = (run_dir / "report.md").read_text().split("\n", 1)[1]  # its own title gives way to the card's
        lines += ["## The training run", "", report.replace("## ", "### ").strip(), ""]
    if run_dir is not None and (run_dir / "config.json").exists():
        lines += _section("Configuration", "```json\n" + (run_dir / "config.json").read_text().strip() + "\n```")
    if run_dir is not None and (run_dir / "samples.txt").exists():
        lines += _section("Samples", "```\n" + (run_dir / "samples.txt").read_text().strip() + "\n```")
    return "\n".join(lines)


def _token() -> str:
    token = os.environ.get("HF_TOKEN") or huggingface_hub.get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN (a token with write access) or run `hf auth login`")
    return token


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False, run_dir: str | Path | None = None) -> str:
    """Write the card into ``folder`` and upload the folder to the model repo ``repo_id``; returns its URL."""
    folder = Path(folder)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(f"{repo_id!r}: name the repository as USER/NAME (or ORGANIZATION/NAME)")
    run = Path(run_dir) if run_dir is not None else None
    (folder / "README.md").write_text(model_card(repo_id, folder, run))
    if run is not None and (run / "loss.png").exists():
        shutil.copyfile(run / "loss.png", folder / "loss.png")
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    api = HfApi(endpoint=endpoint, token=_token())
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload a cavegpt model")
    except hub_errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status in (401, 403):
            raise HubError(f"{repo_id} is taken or your token may not write to it (HTTP {status}): push to a "
                           "name in your own namespace, or use a token with write access") from None
        raise HubError(f"the hub at {endpoint} refused the upload to {repo_id}: {str(e).splitlines()[0]}") from None
    except Exception as e:
        if not _unreachable(e):
            raise
        raise HubError(f"could not reach the Hugging Face hub at {endpoint} ({type(e).__name__}); check the "
                       "network, or HF_ENDPOINT if you use a mirror") from None
    return str(url)


NETWORK_ERRORS = {"ConnectionError", "TransportError", "NetworkError", "TimeoutException", "OfflineModeIsEnabled"}


def _unreachable(error: Exception) -> bool:
    """Whether ``error`` says the hub could not be reached. huggingface_hub raises its HTTP client's own
    errors for that, and the client changed across its versions (requests, httpx), so they are told by name."""
    return isinstance(error, OSError) or any(cls.__name__ in NETWORK_ERRORS for cls in type(error).__mro__)
