"""Node-side reports and teardown: status and uninstall."""
