from django.apps import AppConfig


class ClusteringConfig(AppConfig):
    """Datasets, clustering runs, clusters and their term enrichment."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "clustering"
