"""ASGI entry point for uvicorn (``lpstudy serve``): settings come from LPSTUDY_* variables."""

from app.main import create_app

app = create_app()
