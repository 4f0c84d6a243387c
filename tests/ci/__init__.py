"""The CI evidence tests."""

# For the pytest these tests run as a real runner in a scratch project: the dev install's
# third-party plugins (schemathesis, playwright, hypothesis, …) are none of its business
# and take seconds of CPU to load in each run. The junit XML is pytest's own.
NO_PLUGINS = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
