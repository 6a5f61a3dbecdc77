"""microadjust: real-time micro-adjustments of web pages.

This module stays import-light on purpose: `microadjust.engine` must import under Pyodide,
where Starlette, uvicorn and Redis are absent. Server parts live in their own modules.
"""

__version__ = "0.1.0"
