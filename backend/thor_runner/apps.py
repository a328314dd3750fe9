from django.apps import AppConfig


class ThorRunnerConfig(AppConfig):
    """Installed for its management command, ``run_jobs``; it has no models."""

    name = "thor_runner"
