"""Evidence in transit: probe chips sealed to the review service's short-lived public keys."""
