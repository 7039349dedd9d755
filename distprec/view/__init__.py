"""What the user sees: the live console, its dashboard, log routing, the sweep view and
the HTML report."""
