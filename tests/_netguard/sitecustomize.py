# Loaded by every Python subprocess the tests start (PYTHONPATH points here): no network.
import netguard

netguard.install()
