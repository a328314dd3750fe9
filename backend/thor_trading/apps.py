from django.apps import AppConfig


class ThorTradingConfig(AppConfig):
    name = "thor_trading"
    default_auto_field = "django.db.models.BigAutoField"
