"""Payments across hops: the payer's, mediator's and payee's pure rules (fees so far)."""
