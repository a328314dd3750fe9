from django.apps import AppConfig


class GlobalMarketsConfig(AppConfig):
    name = "global_markets"

    def ready(self) -> None:
        from global_markets.services import redis_health

        # channels_redis logs a traceback per failed receive while Redis is away: fold them into
        # one line per outage (issue 10).
        redis_health.install()
