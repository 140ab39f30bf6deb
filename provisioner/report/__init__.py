"""Result logs summarised: figures (flat memory) and the self-contained HTML page."""
