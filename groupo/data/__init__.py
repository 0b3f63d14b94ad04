"""What is trained on: prompt samplers (``samplers``), rollouts per prompt (``allocation``), the
online difficulty classifier they share (``difficulty``), R³ replay (``replay``), and the offline
MQR question reformulation (``mqr``, ``groupo mqr``)."""
