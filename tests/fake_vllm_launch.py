"""``groupo`` with the fake ``vllm`` of tests/fake_vllm.py installed first, for runs in other
processes: ``python tests/fake_vllm_launch.py train ...`` or ``torchrun ... tests/fake_vllm_launch.py
train ...`` (scripts/dist_check.py's vllm cases). Test-only: the fake samples on the CPU."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if __name__ == "__main__":
    from fake_vllm import install_for_process

    install_for_process()
    from groupo.cli import main

    sys.exit(main(sys.argv[1:]))
