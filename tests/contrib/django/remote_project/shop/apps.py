from django.apps import AppConfig


class ShopConfig(AppConfig):  # type: ignore[misc]  # Django has no type hints
    name = "remote_project.shop"

    def ready(self) -> None:
        from .. import remote  # noqa: F401 - the receivers, in every process
