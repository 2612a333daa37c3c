"""specstress: stress-test AI model specifications."""
