"""The coding agent: tool-use loop, client tools and prompts."""
