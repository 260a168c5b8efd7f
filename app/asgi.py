"""ASGI entry point for uvicorn (``lpstudy serve``): settings come from LPSTUDY_* variables."""

from app.config import get_settings
from app.logs import configure_logging
from app.main import create_app

_settings = get_settings()
configure_logging(_settings.log_level, _settings.log_format)
app = create_app(_settings)
