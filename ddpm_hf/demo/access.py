"""What a visitor of the demo may open, decided in this one place.

- **Local** (the app started on your own machine): any pipeline folder, Hub repo id or dataset typed in the page is
  opened, with your Hub credentials, since the files and the account are yours.
- **Public** (a Hub Space, where `SPACE_ID` is set, or `--public`): a visitor chooses only among what the owner
  serves: the models named at start (a Space: its README's `models:`) and the datasets named at start or in those
  models' cards, plus the bundled `sklearn-digits`. Nothing a visitor sends is opened as a path, nothing is fetched
  with the server's token (a Space's `HF_TOKEN` secret stays the owner's), and every name that is not served gets
  the same message, whether or not something by that name exists on the server.

Gradio's own rules do the rest: it serves only the files the app made and uploads (no `allowed_paths`), refuses
uploads over `max_file_size`, and queues jobs up to `max_size`, telling the next visitor that the queue is full.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import DDPMError, InputError
from ..settings import setting

SPACE_ENV = "SPACE_ID"  # set by the Hub in every Space


class NotServedError(DDPMError, PermissionError):
    """A model or dataset a public demo does not serve (the message is the same whether it exists or not)."""


@dataclass(frozen=True)
class Limits:
    """What one job may ask for, and how many jobs the server takes: the owner's settings (each is a flag of the app).
    The public defaults keep a 2-vCPU Space answering: small jobs, a short queue, small uploads."""

    max_batch_size: int = setting(64, "the most images a Sample job may ask for")
    max_steps: int | None = setting(None, "the most sampling steps a job may ask for (none: the model's T)")
    max_interpolants: int = setting(16, "the most interpolants of an Interpolate job")
    max_file_size: str | None = setting(None, "the largest upload Gradio accepts, e.g. 2mb (none: no limit)")
    max_queue: int | None = setting(None, "jobs that may wait in the queue; the next visitor is told it is full")
    concurrency: int = setting(1, "jobs that run at once (the rest wait in the queue)")

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_interpolants", "concurrency", "max_steps", "max_queue"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"{name} must be a whole number ≥ 1, got {value!r}")
        if self.max_interpolants < 2:
            raise InputError(f"max_interpolants must be at least 2 (the two ends), got {self.max_interpolants}")


LOCAL_LIMITS = Limits()
PUBLIC_LIMITS = Limits(max_batch_size=8, max_interpolants=8, max_file_size="2mb", max_queue=8)


def public_by_default() -> bool:
    """Whether the app runs where strangers reach it: in a Hub Space."""
    return bool(os.environ.get(SPACE_ENV))


@dataclass(frozen=True)
class Access:
    """The demo's trust model: local (anything typed is opened) or public (only what is served)."""

    public: bool
    models: tuple[str, ...]  # the owner's, in order; the first opens when the page does
    datasets: tuple[str, ...] = ()  # the owner's and the models' cards'; in public mode, the only ones
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not self.models:
            raise InputError("a demo serves at least one model")

    @property
    def token(self) -> bool | None:
        """The Hub token for a fetch a visitor causes: None (the server's login) locally, False (none) in public."""
        return False if self.public else None

    def model(self, name: str | None) -> str:
        """The model a visitor chose, if they may open it."""
        return self._choose("model", name, self.models, "a pipeline folder or a Hub repo id")

    def dataset(self, name: str | None) -> str:
        """The dataset a visitor chose, if they may open it."""
        return self._choose("dataset", name, self.datasets, "a Hub id, a local path, or sklearn-digits")

    def _choose(self, what: str, name: str | None, served: tuple[str, ...], kinds: str) -> str:
        name = (name or "").strip()
        if not name:
            raise InputError(
                f"choose a {what}: one of {', '.join(served)}" if self.public else f"name a {what}: {kinds}"
            )
        if self.public and name not in served:
            raise NotServedError(f"this demo does not serve the {what} {name!r}; choose one of: {', '.join(served)}")
        return name
