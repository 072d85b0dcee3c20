"""What the demo is made of (shared by the demo, its set-up, the screenshot and the tests)."""

USERNAME = "demo"
PASSWORD = "demo"
USER_NAME = "Demo"
AREA = "Living room"
SATELLITE = "Living room mic"
DASHBOARD = "guard-mode"
DASHBOARD_TITLE = "Guard Mode"
HA_PORT = 8123
MIC_PORT = 10650
