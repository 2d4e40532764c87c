"""The run report pages under /reports/ (views, their inline SVG figure, URLs); templates in
``llm/templates/llm/reports/``."""
