"""An example rotator provider plugin for the (made-up) Example Keys API."""
