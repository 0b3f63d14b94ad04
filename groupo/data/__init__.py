"""Offline data steps (run before training): MQR question reformulation."""
