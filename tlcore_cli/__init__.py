"""``transfer-lab``: Transfer Lab's command line, calling the same ``tlcore`` functions as the pages."""
