"""The browser demo's logic (`examples/app.py` lays out its page): which models and datasets a visitor may open
(`Access`, local or public), the limits of a job, each visitor's jobs, and the handlers of the page's buttons.

Needs the demo extra: `pip install -e ".[demo]"` (Gradio).
"""

from .access import LOCAL_LIMITS, PUBLIC_LIMITS, Access, Limits, NotServedError, public_by_default
from .handlers import PRECISIONS, Demo, PageError
from .jobs import Job, VisitorJobs
from .models import Model, ModelError, Models, load_model
from .views import display

__all__ = [
    "LOCAL_LIMITS",
    "PRECISIONS",
    "PUBLIC_LIMITS",
    "Access",
    "Demo",
    "Job",
    "Limits",
    "Model",
    "ModelError",
    "Models",
    "NotServedError",
    "PageError",
    "VisitorJobs",
    "display",
    "load_model",
    "public_by_default",
]
