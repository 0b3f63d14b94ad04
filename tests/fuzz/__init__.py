"""The checker fuzz corpus (hostile and near-miss completions per checker kind) and the campaign
that runs it; used by tests/test_fuzz_checkers.py and scripts/fuzz_campaign.py."""
