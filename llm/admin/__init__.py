"""The llm app's admin, one module per part of the work:

* :mod:`.review`: the curators' review desk (``ClusterSummary``), what it shows in
  :mod:`.summary_display`;
* :mod:`.runs`: clustering runs with their summarisation and the actions rerun and cancel
  (the other clustering models are in ``clustering.admin``);
* :mod:`.jobs`: generation jobs, their tasks and the provider call log;
* :mod:`.batches`: provider batches and the deployment identity;
* :mod:`llm.schedule_admin`: the beat schedules' admin, re-registered.

Importing this package (Django's admin autodiscovery does) registers them all.
"""

from llm import schedule_admin  # noqa: F401  (re-registers the beat schedules' admin)
from llm.admin import batches, jobs, review, runs  # noqa: F401  (each registers its ModelAdmins)
