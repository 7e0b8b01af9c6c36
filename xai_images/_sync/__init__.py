"""_sync"""
