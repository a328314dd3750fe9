from django.apps import AppConfig


class GlobalMarketsConfig(AppConfig):
    name = "global_markets"
