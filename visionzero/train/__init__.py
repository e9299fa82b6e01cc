"""Model-side training: micro-batch collation, the policy-gradient loss, the update step."""
