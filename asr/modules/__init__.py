"""Blocks the encoders share: conv subsampling by 4 (``subsampling``) and input normalisation
(``normalize``)."""
