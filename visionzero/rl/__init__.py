"""Pure RL math of Vision-Zero (no torch): rewards, role advantages (RAE), batch statistics
and the Iterative-SPO phase controller. The torch update lives elsewhere and imports these."""
