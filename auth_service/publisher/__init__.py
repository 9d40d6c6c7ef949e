"""The publisher's tools (docs/contract.md §9): API keys for the news site's CMS."""
