"""The Streamlit app of Token Fusion Lab: ``streamlit run app/main.py``."""
