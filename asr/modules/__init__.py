"""Blocks the encoders share: conv subsampling by 4 (``subsampling``), input normalisation
(``normalize``) and a 1x1 conv as a matmul (``pointwise``)."""
