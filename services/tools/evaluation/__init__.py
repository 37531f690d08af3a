"""`lfr eval`: open-set identification accuracy of the product on a folder of identity folders."""
