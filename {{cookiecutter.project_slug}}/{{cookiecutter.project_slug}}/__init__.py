"""{{ cookiecutter.project_name }}: the web application served by gunicorn behind nginx."""
