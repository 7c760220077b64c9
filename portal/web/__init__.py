"""The portal web app: Flask + Dash pages under gunicorn (see README.md in this folder)."""
