"""_bulk"""
