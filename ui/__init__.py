"""The Streamlit side of the app: configuration, cached reads, session state and shared widgets."""
