"""djq's benchmark (``make bench``): figures and ratios, never assertions on time."""
